package gate

// ImageLinks exposes imageLinks to the external tests.
var ImageLinks = imageLinks
