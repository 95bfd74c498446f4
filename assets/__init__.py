"""Demo project assets: a seeded synthetic data feed (`assets.feed`) and feature transforms (`assets.features`)."""
