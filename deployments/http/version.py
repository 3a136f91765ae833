"""The service version, reported by /info and the OpenAPI document."""

VERSION = "0.1.0"
