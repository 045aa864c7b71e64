"""The suite's tests run against the Poe stand-in (`standin/`); nothing is shared here."""
