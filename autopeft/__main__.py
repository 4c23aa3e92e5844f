from autopeft.cli import main

main()
