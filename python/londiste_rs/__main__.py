from londiste_rs.cli import main

main()
