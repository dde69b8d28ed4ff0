package standin

import (
	"encoding/json"
	"net/http"
)

// apiError is one of the vendor's error codes with its HTTP status and
// message text.
type apiError struct {
	status  int
	code    int
	message string
}

// The login errors and their messages are the vendor's. The vendor gives
// only the meaning of 1007, 1008 and 1009, so their messages are the
// stand-in's own.
var (
	errInvalidJSON        = &apiError{http.StatusBadRequest, 110, "JSON is not valid."}
	errInvalidContentType = &apiError{
		http.StatusBadRequest, 111, "Invalid data format (Content-type).",
	}
	errInvalidAuthData = &apiError{http.StatusBadRequest, 1005, "Invalid authorization data."}
	errBadCredentials  = &apiError{http.StatusUnauthorized, 1006, "Bad credentials."}
	errTokenInvalid    = &apiError{http.StatusUnauthorized, 1007, "Token is invalid."}
	errTokenMissing    = &apiError{http.StatusUnauthorized, 1008, "Token is missing."}
	errTokenExpired    = &apiError{http.StatusUnauthorized, 1009, "Token has expired."}
)

type errorEntry struct {
	Code    int    `json:"error"`
	Message string `json:"message"`
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	body := errorBody{Errors: []errorEntry{{Code: e.code, Message: e.message}}}
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	// Marshal fails only on channels, functions, cyclic values and the like;
	// every value this package sends is a struct of strings and integers.
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
