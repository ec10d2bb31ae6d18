package creds

import "errors"

// ErrConfig means the credential issuer is configured wrongly.
var ErrConfig = errors.New("invalid credential issuer configuration")
