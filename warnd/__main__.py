from warnd.cli import main

main()
