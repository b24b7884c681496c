from kernelgate_agent.start import main

main()
