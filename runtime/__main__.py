from edge_search.runtime.cli import main

main()
