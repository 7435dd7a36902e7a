"""Runtime shared by the PEs: context, metrics, emitting, the model book."""
