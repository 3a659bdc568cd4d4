package api

func (s *Server) peoplePages() {}
