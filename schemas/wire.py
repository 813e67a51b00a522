"""What rides on Kafka records beside their values: header names every hop agrees on."""

#: The receiver's wall-clock receipt time (ns, ASCII digits); Collector records have none.
RECEIVED_HEADER = "oodwatch-received-ns"
