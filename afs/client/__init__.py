"""The user CLI's side of the API: `afs login`, `afs filter upload|list|activate|...`, `afs subscribe`."""
