"""The Kafka runtime the PEs run on.

PEs are Faust agents (pe.registry, runtime.agents); this package feeds them. It
reads data-flow channels in batches (batches, dataflow) and logs from their start
(follower), writes records (batches.Publisher), declares topics (admin), speaks TLS
and SASL to the cluster (cluster), sheds load when input outruns the stages
(shedding, stagebooks, windows) and notices a broker that stops answering or serving
(brokerwatch, stallwatch). PEs reach it through their context (context).
``channels`` holds what flows: topics, records, codecs, signing, policies.
"""
