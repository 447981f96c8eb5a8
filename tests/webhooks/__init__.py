"""Tests of billing_batch.webhooks, one module per module of the package."""
