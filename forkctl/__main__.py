from forkctl.cli import main

main()
