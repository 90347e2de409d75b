using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Llama.Compiled.Grammars;

/// <summary>
/// The matching machinery of one grammar over one vocabulary, shared by every generation that uses both (and so
/// thread-safe: every public member takes the engine's lock).
/// </summary>
/// <remarks>
/// <para>
/// A parse position is a pushdown stack of grammar positions (llama.cpp's model): the top is a terminal to match next,
/// the rest says where to continue when the rule ends. Stacks are hash-consed persistent lists, so a stack is an int and
/// equal stacks are the same int; a state of the matcher is a set of stacks (the grammar may be ambiguous), interned
/// too. Rule references in tail position push nothing (<c>r ::= x r | ""</c> does not grow the stack), so a regular
/// part of a grammar (a string, a number) reaches a finite number of states and everything below is cached by state.
/// </para>
/// <para>
/// Cached per state: the state after each byte (a lazily built DFA over states), and the mask of allowed tokens, computed
/// by walking the vocabulary's byte trie in preorder from that state: a byte that leads nowhere skips its whole subtree,
/// every node reached allows the tokens that end there. Checking one token is a walk over its bytes in the DFA.
/// </para>
/// </remarks>
internal sealed class GrammarEngine
{
    // Stop caching masks past this many bytes of them (states keep working, masks are then computed each time).
    private const long MaskCacheBytes = 128L << 20;

    private readonly GrammarProgram _program;
    private readonly TokenVocabulary _vocabulary;
    private readonly Lock _gate = new();

    // Stack nodes: node 0 is the empty stack (the grammar is complete there).
    private readonly List<int> _nodePosition = [-1];
    private readonly List<int> _nodeParent = [-1];
    private readonly Dictionary<long, int> _nodeIndex = [];
    private readonly List<int[]?> _afterMatch = [null];   // per node: the stacks after its terminal matched
    private readonly List<int[]?> _expanded = [null];     // per node: the terminal-topped stacks it expands to

    // States: state 0 is dead (no stack); stack lists are sorted and distinct.
    private readonly List<int[]> _states = [[]];
    private readonly Dictionary<StackList, int> _stateIndex = new() { [new StackList([])] = 0 };
    private readonly List<int[]?> _transitions = [null];  // per state: 256 next states, -1 = not yet known
    private readonly List<ulong[]?> _masks = [null];
    private readonly List<ulong[]?> _releaseMasks = [null]; // masks of a lazy grammar: tokens that finish it may go on
    private long _maskBytes;

    // Scratch.
    private readonly List<int> _scratch = [];
    private int[] _walkStates = [];

    public GrammarEngine(GrammarProgram program, TokenVocabulary vocabulary)
    {
        _program = program;
        _vocabulary = vocabulary;
        var start = new List<int>();
        foreach (int alternative in program.RuleAlternatives[program.Root])
            ExpandAt(alternative, 0, start, 0);
        InitialState = Intern(start);
    }

    public TokenVocabulary Vocabulary => _vocabulary;

    public int InitialState { get; }

    public int MaskWords => (_vocabulary.Count + 63) >> 6;

    /// <summary>Whether the grammar is complete in <paramref name="state"/> (the empty stack is among its stacks).</summary>
    public bool CanEnd(int state)
    {
        lock (_gate)
            return _states[state] is [0, ..];
    }

    /// <summary>Whether <paramref name="state"/> accepts no more bytes (dead, or complete with nothing that could follow).</summary>
    public bool IsFinished(int state)
    {
        lock (_gate)
            return _states[state] is [] or [0];
    }

    /// <summary>The state after <paramref name="bytes"/>, or 0 when they do not match.</summary>
    public int Advance(int state, ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            foreach (byte b in bytes)
            {
                state = Step(state, b);
                if (state == 0)
                    break;
            }
            return state;
        }
    }

    /// <summary>The tokens allowed in <paramref name="state"/> (bit per id below the vocabulary's count); cached, do not modify.</summary>
    /// <param name="state">The state.</param>
    /// <param name="releaseWhenFinished">
    /// Also allow the tokens whose bytes finish the grammar (<see cref="IsFinished"/>) before their end, whatever follows in
    /// them: a lazy grammar lets go of the text there (<see cref="GenerationOptions.GrammarTriggers"/>).
    /// </param>
    public ulong[] Mask(int state, bool releaseWhenFinished = false)
    {
        lock (_gate)
        {
            List<ulong[]?> masks = releaseWhenFinished ? _releaseMasks : _masks;
            if (masks[state] is { } cached)
                return cached;
            ulong[] mask = ComputeMask(state, releaseWhenFinished);
            if (_maskBytes + mask.Length * 8L <= MaskCacheBytes)
            {
                masks[state] = mask;
                _maskBytes += mask.Length * 8L;
            }
            return mask;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private ulong[] ComputeMask(int state, bool releaseWhenFinished)
    {
        TokenVocabulary v = _vocabulary;
        var mask = new ulong[MaskWords];
        if (_walkStates.Length < v.MaxDepth + 1)
            _walkStates = new int[v.MaxDepth + 1];
        int[] states = _walkStates;
        states[0] = state;
        byte[] nodeByte = v.NodeByte;
        int[] nodeDepth = v.NodeDepth, nodeEnd = v.NodeEnd, tokenStart = v.NodeTokenStart, tokens = v.NodeTokens;
        int n = nodeByte.Length;
        for (int i = 1; i < n;)
        {
            int parentState = states[nodeDepth[i] - 1];
            int[]? row = _transitions[parentState];
            int next = row is not null && row[nodeByte[i]] >= 0 ? row[nodeByte[i]] : Step(parentState, nodeByte[i]);
            if (next == 0)
            {
                i = nodeEnd[i];
                continue;
            }
            if (releaseWhenFinished && _states[next] is [0])
            {
                // The grammar is finished after this byte: every token of the subtree (preorder: contiguous) is allowed.
                for (int t = tokenStart[i], end = tokenStart[nodeEnd[i]]; t < end; t++)
                    mask[tokens[t] >> 6] |= 1UL << (tokens[t] & 63);
                i = nodeEnd[i];
                continue;
            }
            states[nodeDepth[i]] = next;
            for (int t = tokenStart[i], end = tokenStart[i + 1]; t < end; t++)
                mask[tokens[t] >> 6] |= 1UL << (tokens[t] & 63);
            i++;
        }
        return mask;
    }

    private int Step(int state, byte b)
    {
        int[]? row = _transitions[state];
        if (row is null)
        {
            row = new int[256];
            row.AsSpan().Fill(-1);
            _transitions[state] = row;
        }
        int next = row[b];
        if (next >= 0)
            return next;
        List<int> result = _scratch;
        result.Clear();
        foreach (int stack in _states[state])
        {
            if (stack == 0 || !_program.Matches(_nodePosition[stack], b))
                continue;
            result.AddRange(AfterMatch(stack));
        }
        next = result.Count == 0 ? 0 : Intern(result);
        _transitions[state]![b] = next;
        return next;
    }

    private int[] AfterMatch(int stack)
    {
        if (_afterMatch[stack] is { } cached)
            return cached;
        var output = new List<int>();
        ExpandAt(_nodePosition[stack] + 1, _nodeParent[stack], output, 0);
        int[] result = Distinct(output);
        _afterMatch[stack] = result;
        return result;
    }

    /// <summary>The stacks that continue at <paramref name="position"/> and then at <paramref name="parent"/>, each with a terminal on top (or empty).</summary>
    private void ExpandAt(int position, int parent, List<int> output, int depth)
    {
        if (depth > 10_000)
            throw new InvalidOperationException("The grammar nests rules more than 10000 deep without matching a byte.");
        switch (_program.Kinds[position])
        {
            case GrammarProgram.Terminal:
                output.Add(Node(position, parent));
                break;
            case GrammarProgram.End:
                if (parent == 0)
                    output.Add(0);
                else
                    output.AddRange(Expanded(parent));
                break;
            default:
                int continuation = _program.Kinds[position + 1] == GrammarProgram.End ? parent : Node(position + 1, parent);
                foreach (int alternative in _program.RuleAlternatives[_program.Values[position]])
                    ExpandAt(alternative, continuation, output, depth + 1);
                break;
        }
    }

    private int[] Expanded(int node)
    {
        if (_expanded[node] is { } cached)
            return cached;
        var output = new List<int>();
        ExpandAt(_nodePosition[node], _nodeParent[node], output, 0);
        int[] result = Distinct(output);
        _expanded[node] = result;
        return result;
    }

    private int Node(int position, int parent)
    {
        long key = (long)position << 32 | (uint)parent;
        if (_nodeIndex.TryGetValue(key, out int id))
            return id;
        id = _nodePosition.Count;
        _nodePosition.Add(position);
        _nodeParent.Add(parent);
        _afterMatch.Add(null);
        _expanded.Add(null);
        _nodeIndex[key] = id;
        return id;
    }

    private static int[] Distinct(List<int> stacks)
    {
        int[] array = [.. stacks];
        Array.Sort(array);
        int count = 0;
        for (int i = 0; i < array.Length; i++)
        {
            if (count == 0 || array[count - 1] != array[i])
                array[count++] = array[i];
        }
        return count == array.Length ? array : array[..count];
    }

    private int Intern(List<int> stacks)
    {
        int[] key = Distinct(stacks);
        var list = new StackList(key);
        if (_stateIndex.TryGetValue(list, out int id))
            return id;
        id = _states.Count;
        _states.Add(key);
        _transitions.Add(null);
        _masks.Add(null);
        _releaseMasks.Add(null);
        _stateIndex[list] = id;
        return id;
    }

    /// <summary>A sorted stack list as a dictionary key.</summary>
    private readonly struct StackList(int[] stacks) : IEquatable<StackList>
    {
        private readonly int[] _stacks = stacks;

        public bool Equals(StackList other) => _stacks.AsSpan().SequenceEqual(other._stacks);

        public override bool Equals(object? obj) => obj is StackList other && Equals(other);

        public override int GetHashCode()
        {
            var hash = new HashCode();
            hash.AddBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_stacks.AsSpan()));
            return hash.ToHashCode();
        }
    }
}
