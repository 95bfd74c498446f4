"""Demo project assets: a seeded synthetic data feed (`assets.feed`) and its feature transforms
(`assets.features`)."""
