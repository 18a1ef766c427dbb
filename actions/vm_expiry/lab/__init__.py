"""The local lab: real Keystone, Nova, RabbitMQ, Mistral and an SMTP sink on 127.0.0.1."""
