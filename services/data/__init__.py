"""The data service: items that users own, stored in MongoDB (pinexa.data.v1)."""
