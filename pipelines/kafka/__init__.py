"""Apache Kafka run by crowdstream itself: the pinned release, one node, a local cluster."""
