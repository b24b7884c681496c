from kernelgate.app import main

main()
