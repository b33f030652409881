from after.cli.main import main

raise SystemExit(main())
