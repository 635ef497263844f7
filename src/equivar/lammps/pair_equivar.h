/* pair_style equivar: an equivar potential, exported with `equivar export --lammps`, run by
   LAMMPS through libtorch's AOTInductor loader (no Python at run time).

   Usage:
     plugin load libequivar_lammps.so
     pair_style equivar [float32|float64]
     pair_coeff * * model.pt2 El_1 ... El_ntypes      (NULL: atoms of that type are ignored)

   Each rank keeps ghost atoms out to num_layers x cutoff (+ skin) and a full neighbour list that
   includes the ghosts' neighbours. It hands the model the atoms within num_layers edges of a local
   atom, the directed pairs within the cutoff into atoms within num_layers - 1 edges (the only
   messages that reach a local energy), and which atoms are local. The model returns the energy of
   the local atoms, per-atom energies, forces on every atom (ghosts included) and the virial
   sum_i x_i (x) f_i. Ghost forces go back to their owners by LAMMPS's reverse communication
   (newton_pair on) or by this pair style's own (newton_pair off). This header includes no
   libtorch header: only pair_equivar.cpp compiles against libtorch. */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(equivar,PairEquivar);
// clang-format on
#else

#ifndef LMP_PAIR_EQUIVAR_H
#define LMP_PAIR_EQUIVAR_H

#include "pair.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairEquivar : public Pair {
 public:
  PairEquivar(class LAMMPS *);
  ~PairEquivar() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
  double memory_usage() override;

  struct Model;    // the AOTInductor loader (defined in pair_equivar.cpp, with libtorch)

 protected:
  std::unique_ptr<Model> model;
  std::string requested_dtype;    // from pair_style (empty: take the model's)
  std::string model_dtype;        // from the package's metadata
  double cutoff = 0.0;
  int num_layers = 0;
  std::vector<long> species;      // atomic numbers the model knows
  std::vector<int> type_z;        // atomic number per atom type (index 1..ntypes), -1 for NULL
  double **fghost = nullptr;      // forces of this rank's model on local + ghost atoms
  int nmax = 0;
  std::vector<int> hop;           // edges from the nearest local atom (-1: beyond num_layers)
  std::vector<int> nodes;         // atom index of each model node
  std::vector<int> node_of;       // model node of each atom (-1: not a node)
  std::vector<int64_t> senders, receivers;    // model edges (node indices)

  void allocate();
  void load_model(const std::string &path);
  void select_graph(int nlocal, int nall);
  void run_model(int nlocal, int nall, double &energy, double *virial6, bool want_eatom);
};

}    // namespace LAMMPS_NS

#endif
#endif
