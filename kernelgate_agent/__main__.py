from kernelgate_agent.agent import main

main()
