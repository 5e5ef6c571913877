from textbackd.cli import main

raise SystemExit(main())
