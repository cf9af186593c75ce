"""All of the 5-second logic: which attempt carries which reply, customer-service sends, wake-ups."""
