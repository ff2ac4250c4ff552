// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * entry - the program attached to a device and hook whose chains run one
 * program per stage (a point with a third-party stage; the others run
 * their walk program there instead, walk.bpf.c). It parses the packet
 * once (begin.h), puts the offsets into the per-packet context and
 * tail-calls the first stage of the chains of its attach point (through
 * the point's head slot, see abi.h). Non-TCP packets and packets it
 * cannot parse pass untouched.
 */
#include "vmlinux.h"
#include <emptcp/emptcp.h>

#include "begin.h"

/* Which emptcp_attach entry this program instance serves (set at load). */
const volatile __u32 attach_id = 0;

/*
 * Every ABI type user space writes, kept in BTF so that the skeleton's
 * types module is the one C<->Rust definition. No program reads it.
 */
struct emptcp_abi_types {
	struct emptcp_stage stage;
	struct emptcp_attach attach;
	struct emptcp_pctx pctx;
	struct emptcp_ip_pair ip_pair;
	struct emptcp_packet_type packet_type;
	struct emptcp_set_backup set_backup;
	struct emptcp_flow_key flow_key;
	struct emptcp_subflow subflow;
	struct emptcp_prefix prefix;
	struct emptcp_port port;
	struct emptcp_set_mark set_mark;
	struct emptcp_redirect redirect;
	struct emptcp_event event;
	struct emptcp_flow_rec flow_rec;
	struct emptcp_rate_limit rate_limit;
	struct emptcp_rl_flow rl_flow;
	struct emptcp_stage_info stage_info;
	struct emptcp_sequence sequence;
	struct emptcp_blk_subflow blk_subflow;
	struct emptcp_kept kept;
	/* the enums whose members Rust uses (src/abi.rs) */
	enum emptcp_abi_version abi_version;
	enum emptcp_limits limits;
	enum emptcp_role role;
	enum emptcp_param_size param_size;
	enum emptcp_counter counter;
	enum emptcp_stage_flag stage_flag;
	enum emptcp_kind kind;
	enum emptcp_rec_metric rec_metric;
	enum emptcp_event_kind event_kind;
	enum emptcp_event_flag event_flag;
	enum emptcp_event_readers event_readers;
	enum emptcp_subflow_flag subflow_flag;
	enum emptcp_prefix_flag prefix_flag;
	enum emptcp_port_flag port_flag;
	enum emptcp_redirect_flag redirect_flag;
	enum emptcp_ip_pair_flag ip_pair_flag;
	enum emptcp_ptype ptype;
	enum emptcp_set_backup_flag set_backup_flag;
	enum emptcp_seq_field seq_field;
	enum emptcp_seq_flag seq_flag;
	enum emptcp_blk_mode blk_mode;
	enum emptcp_max_tables max_tables;
	enum emptcp_layout layout;
	enum emptcp_keyof keyof;
	enum emptcp_tab_flag tab_flag;
	enum emptcp_tab_tag tab_tag;
	enum emptcp_tab_limit tab_limit;
	enum emptcp_tab_pfx tab_pfx;
};
const volatile struct emptcp_abi_types emptcp_abi SEC(".rodata.abi") = {};

SEC(EMPTCP_SEC)
int emptcp_entry(emptcp_ctx *ctx)
{
	struct emptcp_attach *a;
	struct emptcp_pctx p = {};
	__u32 id = attach_id;

	/*
	 * emptcp_attach (anything to run?) is read only when the jump below
	 * misses: an attach point with chains has its head slot filled, so
	 * packets do not pay that lookup (~5 ns on the wire, docs/design.md).
	 */
	if (emptcp_begin(ctx, &p) < 0)
		return EMPTCP_PASS;
	if (emptcp_pctx_store(ctx, &p) < 0)
		return EMPTCP_PASS;
	/*
	 * The head slot (abi.h) is a constant to the verifier (attach_id is
	 * in .rodata): the JIT emits a direct jump, patched when emptcp swaps
	 * the chain list. A jump through emptcp_attach's `first` would be an
	 * indirect jump, a retpoline on mitigated CPUs (+8 ns, see
	 * docs/design.md).
	 */
	bpf_tail_call(ctx, &emptcp_progs, EMPTCP_HEAD_SLOT(attach_id));
	/* an empty head slot with nothing to run (detaching) is no miss */
	a = bpf_map_lookup_elem(&emptcp_attach, &id);
	if (a && a->first)
		emptcp_count(0, EMPTCP_CNT_TAIL_MISS);
	return EMPTCP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
