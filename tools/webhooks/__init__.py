"""Provider webhooks: one module per provider verifies its signature scheme and turns its
events into `EngagementEvent`s; `tools.engagement` stores and folds them."""
