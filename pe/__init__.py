"""Processing elements (PEs): one subpackage or module per element, plus shared runtime."""
