"""The front desk: stays, badges, sessions and statements in a browser (`irve desk`)."""
