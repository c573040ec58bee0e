from molshape.cli import main

main()
