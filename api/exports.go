package api

func (s *Server) exportRoutes() {}
