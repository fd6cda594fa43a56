//! Policy: config → validated rules; request facts + counter outcomes → verdict (pure).
