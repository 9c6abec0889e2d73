"""The marketplace: listings, discovery and ranking, RFPs and bids, contracts, heartbeats,
trials and reputation."""
