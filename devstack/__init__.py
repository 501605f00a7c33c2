"""The whole product on one machine, without AWS: see devstack/README.md."""
