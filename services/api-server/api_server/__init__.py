"""The search API: accepts searches, queues them on Kafka, serves results."""
