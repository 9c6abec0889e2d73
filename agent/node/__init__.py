"""Lightning node backends behind one interface: Core Lightning (pyln-client) and the simulator."""
