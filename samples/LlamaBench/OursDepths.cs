using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Llama.Compiled;

namespace LlamaBench;

/// <summary>
/// --depth for our sessions: the state (KV cache, position) after the first d tokens of one sequence is made once per depth, by a
/// prefill from the deepest state already made, and saved (<see cref="ILlamaSession.Save"/>); each run restores it. A state
/// restores into any session of the same model, so the thread counts share it.
/// </summary>
internal sealed class OursDepths(int[] tokens)
{
    private readonly SortedDictionary<int, byte[]> _states = [];

    /// <summary>Brings <paramref name="session"/> to the state after tokens[0..<paramref name="depth"/>].</summary>
    public void MoveTo(ILlamaSession session, int depth)
    {
        if (depth == 0)
        {
            session.Reset();
            return;
        }
        if (_states.TryGetValue(depth, out byte[]? state))
        {
            using var saved = new MemoryStream(state, writable: false);
            session.Restore(saved);
            return;
        }
        int from = _states.Keys.LastOrDefault(d => d < depth);
        if (from == 0)
            session.Reset();
        else
            MoveTo(session, from);
        session.Forward(tokens.AsSpan(from, depth - from));
        using var stream = new MemoryStream();
        session.Save(stream);
        _states[depth] = stream.ToArray();
    }
}
