"""The supernet math: calibration statistics, criteria that rank units, compensation, the build that turns them
into every module's variants (and its cache), coarse-to-fine refinement, FLAP's installed baseline, and the
switcher that installs variants in a live model."""
