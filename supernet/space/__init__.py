"""The allocation space: level grids and their budget rule, what a budget counts (parameters, FLOPs), the moves
and repairs a search makes, the allocations that need no search (uniform, FLAP's, depth-linear) and the
allocation record. Integers and costs only: it reads a model's shape through its adapter (supernet.io) and
never the supernet math."""
