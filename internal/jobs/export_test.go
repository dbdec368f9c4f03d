package jobs

// DirSinkPath exposes dirSinkPath to the fuzz test.
var DirSinkPath = dirSinkPath
