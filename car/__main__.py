from car.cli import main

raise SystemExit(main())
