package broker

// Store returns the Persistence s uses, so that tests can read what the
// running broker has stored (Load). It exists in test builds only: the
// broker hands its store to no one, and a program that needs the store
// opens it itself and passes it in Options.Persistence.
func (s *Server) Store() Persistence { return s.persist }
