"""What came of the issues: stats, insights and charts, and the click log they read."""
