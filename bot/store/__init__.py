"""Redis, with one owner per key family: no module outside this package builds or touches a key."""
