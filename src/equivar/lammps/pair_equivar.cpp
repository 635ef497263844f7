/* pair_style equivar (see pair_equivar.h for usage and the parallel scheme). The only
   translation unit that includes libtorch: it loads the AOTInductor package, builds the model's
   inputs from LAMMPS's arrays and neighbour list, and hands energies, forces and the virial
   back. */

#include "pair_equivar.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>

using namespace LAMMPS_NS;

namespace {

// the format tag written by equivar.train.lammps_export (LAMMPS_FORMAT)
const char *const FORMAT = "equivar-lammps/1";

const char *const SYMBOLS[] = {
    "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",
    "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh",
    "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd",
    "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re",
    "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th",
    "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db",
    "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
const int N_ELEMENTS = sizeof(SYMBOLS) / sizeof(SYMBOLS[0]);

// atomic number of an element symbol, 0 if it is none
int atomic_number(const std::string &symbol)
{
  for (int z = 1; z <= N_ELEMENTS; ++z)
    if (symbol == SYMBOLS[z - 1]) return z;
  return 0;
}

std::string element_name(long z)
{
  return (z >= 1 && z <= N_ELEMENTS) ? SYMBOLS[z - 1] : std::to_string(z);
}

std::string join(const std::vector<long> &zs)
{
  std::string out;
  for (long z : zs) out += (out.empty() ? "" : " ") + element_name(z);
  return out;
}

std::string first_line(const char *what)
{
  std::string text(what ? what : "");
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

}    // namespace

struct PairEquivar::Model {
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  torch::Dtype dtype = torch::kFloat64;
};

PairEquivar::PairEquivar(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  ghostneigh = 1;                  // the model needs the edges between ghost atoms too
  no_virial_fdotr_compute = 1;     // the model returns the virial of local + ghost atoms
  comm_reverse = 3;                // ghost forces, when this style sends them (newton off)
  comm_reverse_off = 3;
  centroidstressflag = 2;          // CENTROID_NOTAVAIL: no per-atom virial
  // `compute ID all pair equivar` reads (summed over ranks): model nodes, model edges, and the
  // local + ghost atoms LAMMPS holds, of the last step
  nextra = 3;
  pvector = new double[nextra];
  for (int k = 0; k < nextra; ++k) pvector[k] = 0.0;
}

PairEquivar::~PairEquivar()
{
  memory->destroy(fghost);
  delete[] pvector;    // and nullptr: a base class that also frees it sees nothing
  pvector = nullptr;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairEquivar::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) setflag[i][j] = 0;
}

/* pair_style equivar [float32|float64]: the optional word is the precision the run expects;
   a package exported in the other one is refused at pair_coeff. */
void PairEquivar::settings(int narg, char **arg)
{
  if (narg > 1)
    error->all(FLERR, "pair_style equivar takes at most one argument (float32 or float64), got "
               "{}", narg);
  requested_dtype.clear();
  if (narg == 1) {
    std::string word(arg[0]);
    if (word != "float32" && word != "float64")
      error->all(FLERR, "pair_style equivar: unknown argument '{}' (expected float32 or "
                 "float64)", word);
    requested_dtype = word;
  }
}

void PairEquivar::load_model(const std::string &path)
{
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe.good())
      error->all(FLERR, "pair_style equivar: model file '{}' does not exist or cannot be read",
                 path);
    char magic[2] = {0, 0};
    probe.read(magic, 2);
    if (magic[0] != 'P' || magic[1] != 'K')
      error->all(FLERR, "pair_style equivar: model file '{}' is not a .pt2 package (not a zip "
                 "archive); write one with: equivar export CHECKPOINT --lammps -o model.pt2", path);
  }
  auto m = std::make_unique<Model>();
  std::unordered_map<std::string, std::string> meta;
  try {
    m->loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model");
    meta = m->loader->get_metadata();
  } catch (const std::exception &err) {
    error->all(FLERR, "pair_style equivar: cannot load model '{}': {} (is it truncated or corrupt, "
               "or built for another torch version or CPU? re-export it with equivar export "
               "--lammps on this machine)", path, first_line(err.what()));
  }
  auto get = [&](const char *key) -> std::string {
    auto it = meta.find(key);
    if (it == meta.end())
      error->all(FLERR, "pair_style equivar: '{}' is not an equivar LAMMPS package (metadata "
                 "'{}' missing); write one with equivar export --lammps", path, key);
    return it->second;
  };
  if (get("equivar_format") != FORMAT)
    error->all(FLERR, "pair_style equivar: '{}' has format '{}', this plugin reads '{}'", path,
               get("equivar_format"), FORMAT);
  cutoff = std::stod(get("cutoff"));
  num_layers = std::stoi(get("num_layers"));
  model_dtype = get("dtype");
  species.clear();
  std::istringstream words(get("species"));
  for (long z; words >> z;) species.push_back(z);
  if (model_dtype == "float32")
    m->dtype = torch::kFloat32;
  else if (model_dtype == "float64")
    m->dtype = torch::kFloat64;
  else
    error->all(FLERR, "pair_style equivar: '{}' has unknown dtype '{}'", path, model_dtype);
  if (!requested_dtype.empty() && requested_dtype != model_dtype)
    error->all(FLERR, "pair_style equivar: the model '{}' was exported in {} but pair_style asks "
               "for {}; export it again with equivar export --lammps --dtype {}", path,
               model_dtype, requested_dtype, requested_dtype);
  if (cutoff <= 0.0 || num_layers < 1 || species.empty())
    error->all(FLERR, "pair_style equivar: '{}' has invalid metadata (cutoff {}, {} layers, {} "
               "species)", path, cutoff, num_layers, species.size());
  model = std::move(m);
}

/* pair_coeff * * model.pt2 El_1 ... El_ntypes */
void PairEquivar::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg < 3 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for equivar must be: pair_coeff * * model.pt2 followed by one "
               "element per atom type");
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff for equivar: {} element name(s) given for {} atom type(s); give "
               "one element (or NULL) per atom type", narg - 3, ntypes);
  load_model(arg[2]);
  type_z.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; ++t) {
    std::string name(arg[2 + t]);
    if (name == "NULL") continue;
    int z = atomic_number(name);
    if (z == 0)
      error->all(FLERR, "pair_coeff for equivar: '{}' (atom type {}) is not an element symbol",
                 name, t);
    bool known = false;
    for (long s : species) known = known || (s == z);
    if (!known)
      error->all(FLERR, "pair_coeff for equivar: element {} (atom type {}) is not among the "
                 "model's species ({})", name, t, join(species));
    type_z[t] = z;
  }
  // NULL types are set too: this style computes nothing for them (a hybrid/overlay style can)
  for (int i = 1; i <= ntypes; ++i)
    for (int j = i; j <= ntypes; ++j) setflag[i][j] = 1;
}

void PairEquivar::init_style()
{
  if (!model)
    error->all(FLERR, "pair_style equivar: no model loaded (pair_coeff * * model.pt2 ...)");
  if (comm->mode != 0)    // Comm::SINGLE: one ghost cutoff, which init_style raises below
    error->all(FLERR, "pair_style equivar needs comm_modify mode single");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style equivar needs units metal (Angstrom, eV), got units {}",
               update->unit_style);
  // every atom within num_layers x cutoff of a local atom must be present (as a ghost), and
  // stay present until the next reneighbouring: ghost cutoff = num_layers x cutoff + skin
  double needed = num_layers * cutoff + neighbor->skin;
  if (comm->cutghostuser < needed) {
    comm->cutghostuser = needed;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style equivar: ghost cutoff set to {:.4g} A ({} layers x cutoff "
                     "{:.4g} + skin {:.4g})\n", needed, num_layers, cutoff, neighbor->skin);
  }
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
}

double PairEquivar::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = cutoff;
  return cutoff;
}

void PairEquivar::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom || cvflag_atom)
    error->all(FLERR, "pair_style equivar does not compute per-atom virials (compute "
               "stress/atom or centroid/stress/atom)");
  int nlocal = atom->nlocal;
  int nall = nlocal + atom->nghost;
  if (nall > nmax) {
    memory->destroy(fghost);
    nmax = atom->nmax > nall ? atom->nmax : nall;
    memory->create(fghost, nmax, 3, "pair:fghost");
  }
  for (int i = 0; i < nall; ++i) fghost[i][0] = fghost[i][1] = fghost[i][2] = 0.0;
  double energy = 0.0, w[6] = {0, 0, 0, 0, 0, 0};
  nodes.clear();
  senders.clear();
  if (nlocal > 0) run_model(nlocal, nall, energy, w, eflag_atom);
  pvector[0] = static_cast<double>(nodes.size());
  pvector[1] = static_cast<double>(senders.size());
  pvector[2] = static_cast<double>(nall);
  double **f = atom->f;
  if (force->newton_pair) {
    for (int i = 0; i < nall; ++i)
      for (int k = 0; k < 3; ++k) f[i][k] += fghost[i][k];
  } else {    // LAMMPS does not reverse-communicate with newton off: send ghost forces here
    comm->reverse_comm(this);    // collective: every rank takes part, also without atoms
    for (int i = 0; i < nlocal; ++i)
      for (int k = 0; k < 3; ++k) f[i][k] += fghost[i][k];
  }
  if (eflag_global) eng_vdwl += energy;
  if (vflag_global)
    for (int k = 0; k < 6; ++k) virial[k] += w[k];
}

/* The atoms and edges the local energies depend on. hop[i] = number of edges (within the
   cutoff) between atom i and the nearest local atom, counted up to num_layers: the energy of a
   local atom after L layers reads layer-k features of atoms at most L - k hops away, so only
   atoms within L hops are nodes, and only edges into atoms within L - 1 hops carry a message
   that reaches a local energy. The rest of the ghost shell (its outer part, and the skin that
   LAMMPS adds) is left out: exact, and far cheaper than the whole shell. */
void PairEquivar::select_graph(int nlocal, int nall)
{
  double **x = atom->x;
  int *type = atom->type;
  int *numneigh = list->numneigh, **firstneigh = list->firstneigh;
  double rc2 = cutoff * cutoff;
  auto within = [&](int i, int j) {
    double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
    return dx * dx + dy * dy + dz * dz < rc2;
  };
  hop.assign(nall, -1);
  std::vector<int> frontier, next;
  for (int i = 0; i < nlocal; ++i)
    if (type_z[type[i]] >= 0) {
      hop[i] = 0;
      frontier.push_back(i);
    }
  for (int h = 0; h < num_layers && !frontier.empty(); ++h) {
    next.clear();
    for (int i : frontier)
      for (int jj = 0; jj < numneigh[i]; ++jj) {
        int j = firstneigh[i][jj] & NEIGHMASK;
        if (hop[j] < 0 && type_z[type[j]] >= 0 && within(i, j)) {
          hop[j] = h + 1;
          next.push_back(j);
        }
      }
    frontier.swap(next);
  }
  nodes.clear();
  node_of.assign(nall, -1);
  for (int i = 0; i < nall; ++i)
    if (hop[i] >= 0) {
      node_of[i] = static_cast<int>(nodes.size());
      nodes.push_back(i);
    }
  senders.clear();
  receivers.clear();
  for (int i : nodes) {
    if (hop[i] >= num_layers) continue;    // its messages would reach no local energy
    for (int jj = 0; jj < numneigh[i]; ++jj) {
      int j = firstneigh[i][jj] & NEIGHMASK;
      if (type_z[type[j]] >= 0 && within(i, j)) {    // directed edge j -> i
        senders.push_back(node_of[j]);
        receivers.push_back(node_of[i]);
      }
    }
  }
}

/* The model on this rank's atoms: energy of the local atoms, forces on all atoms into fghost,
   virial (xx, yy, zz, xy, xz, yz) and, with want_eatom, per-atom energies into eatom. */
void PairEquivar::run_model(int nlocal, int nall, double &energy, double *w, bool want_eatom)
{
  select_graph(nlocal, nall);
  double **x = atom->x;
  int *type = atom->type;
  int64_t n_nodes = static_cast<int64_t>(nodes.size());
  int64_t n_edges = static_cast<int64_t>(senders.size());
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor pos = torch::empty({n_nodes, 3}, f64);
  torch::Tensor z = torch::empty({n_nodes}, i64);
  torch::Tensor local = torch::empty({n_nodes}, f64);
  double *pos_p = pos.data_ptr<double>(), *local_p = local.data_ptr<double>();
  int64_t *z_p = z.data_ptr<int64_t>();
  for (int64_t k = 0; k < n_nodes; ++k) {
    int i = nodes[k];
    for (int d = 0; d < 3; ++d) pos_p[3 * k + d] = x[i][d];
    z_p[k] = type_z[type[i]];
    local_p[k] = i < nlocal ? 1.0 : 0.0;
  }
  torch::Tensor edge_index = torch::empty({2, n_edges}, i64);
  if (n_edges > 0) {
    std::memcpy(edge_index[0].data_ptr<int64_t>(), senders.data(), n_edges * sizeof(int64_t));
    std::memcpy(edge_index[1].data_ptr<int64_t>(), receivers.data(), n_edges * sizeof(int64_t));
  }
  std::vector<torch::Tensor> out;
  try {
    out = model->loader->run({pos.to(model->dtype), z, edge_index, local.to(model->dtype)});
  } catch (const std::exception &err) {
    error->one(FLERR, "pair_style equivar: the model failed on {} atoms and {} edges: {}",
               n_nodes, n_edges, first_line(err.what()));
  }
  if (out.size() != 4 || out[2].numel() != 3 * n_nodes || out[3].numel() != 9)
    error->one(FLERR, "pair_style equivar: the model returned {} outputs of unexpected shapes "
               "(expected energy, node_energy, forces [n, 3], virial [3, 3])", out.size());
  if (out[2].scalar_type() != model->dtype)
    error->one(FLERR, "pair_style equivar: the model computes in another dtype than its "
               "metadata says ({})", model_dtype);
  energy = out[0].to(torch::kFloat64).item<double>();
  torch::Tensor forces = out[2].to(torch::kFloat64).contiguous();
  const double *fp = forces.data_ptr<double>();
  for (int64_t k = 0; k < n_nodes; ++k)
    for (int d = 0; d < 3; ++d) fghost[nodes[k]][d] = fp[3 * k + d];
  torch::Tensor vir = out[3].to(torch::kFloat64).contiguous();
  const double *v = vir.data_ptr<double>();    // v[3a + b] = sum_i x_ia f_ib
  w[0] = v[0];
  w[1] = v[4];
  w[2] = v[8];
  w[3] = v[1];
  w[4] = v[2];
  w[5] = v[5];
  if (want_eatom) {
    torch::Tensor node = out[1].to(torch::kFloat64).contiguous();
    const double *e = node.data_ptr<double>();
    for (int i = 0; i < nlocal; ++i)
      if (node_of[i] >= 0) eatom[i] += e[node_of[i]];
  }
}

int PairEquivar::pack_reverse_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int i = first; i < first + n; ++i) {
    buf[m++] = fghost[i][0];
    buf[m++] = fghost[i][1];
    buf[m++] = fghost[i][2];
  }
  return m;
}

void PairEquivar::unpack_reverse_comm(int n, int *list_, double *buf)
{
  int m = 0;
  for (int i = 0; i < n; ++i) {    // the receiving atom may itself be a ghost (multi-hop swaps)
    int j = list_[i];
    fghost[j][0] += buf[m++];
    fghost[j][1] += buf[m++];
    fghost[j][2] += buf[m++];
  }
}

double PairEquivar::memory_usage()
{
  return Pair::memory_usage() + 3.0 * nmax * sizeof(double);
}
