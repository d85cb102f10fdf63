from litestar_app.cli import main

raise SystemExit(main())
