"""Talking to Cognito: sessions, credentials and clients, and the pages of ListUserImportJobs
and ListUserPools read into checked records."""
