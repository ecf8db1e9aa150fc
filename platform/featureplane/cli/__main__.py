from featureplane.cli.app import main

main()
