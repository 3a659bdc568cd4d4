package api

func (s *Server) adminPages() {}
