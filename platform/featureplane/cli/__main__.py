from featureplane.cli.main import main

main()
