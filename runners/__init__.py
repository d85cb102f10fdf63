"""Everything about the sd.cpp binaries: discovery, argv building, supervision and output parsing."""
