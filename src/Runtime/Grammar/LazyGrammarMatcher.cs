using System;
using System.Collections.Generic;
using System.Text;
using Llama.Compiled.Grammars;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// A grammar that applies only from where a trigger appears in the output until it is finished
/// (<see cref="GenerationOptions.GrammarTriggers"/>). The output is followed byte by byte: in free text each byte may
/// complete a trigger, after which the bytes go to the grammar; when the grammar is finished, the bytes are free again.
/// So a token may end a trigger and begin the grammar's text, or end the grammar's text and go on freely.
/// </summary>
internal sealed class LazyGrammarMatcher
{
    private readonly GrammarMatcher _matcher;
    private readonly GrammarEngine _engine;
    private readonly Tokenizer _tokenizer;
    private readonly byte[][] _triggers;
    private readonly GrammarTrigger[] _definitions;
    private readonly int _longest;
    private readonly Dictionary<int, byte[]> _specialText = [];

    // The scan: the last free bytes (up to the longest trigger), the output's length in bytes, how many bytes it starts
    // with that are whitespace (final once other text came), and whether the grammar applies (then _matcher.State is its place).
    private readonly byte[] _tail;
    private Scan _scan;

    private struct Scan
    {
        public int GrammarState;
        public bool Active;
        public int TailLength;
        public long Length;
        public long LeadingWhitespace;
        public bool SawText;
    }

    public LazyGrammarMatcher(GrammarMatcher matcher, Tokenizer tokenizer, IReadOnlyList<GrammarTrigger> triggers)
    {
        _matcher = matcher;
        _engine = matcher.Engine;
        _tokenizer = tokenizer;
        _definitions = [.. triggers];
        _triggers = new byte[_definitions.Length][];
        for (int i = 0; i < _definitions.Length; i++)
        {
            ArgumentNullException.ThrowIfNull(_definitions[i], nameof(triggers));
            _triggers[i] = Encoding.UTF8.GetBytes(_definitions[i].Text);
            _longest = Math.Max(_longest, _triggers[i].Length);
        }
        _tail = new byte[Math.Max(_longest, 1)];
        _scan.GrammarState = _engine.InitialState;
    }

    /// <summary>The matcher of the grammar (its state is the grammar's place while <see cref="IsActive"/>).</summary>
    public GrammarMatcher Matcher => _matcher;

    /// <summary>Whether the grammar applies to the next token.</summary>
    public bool IsActive => _scan.Active;

    /// <summary>Whether <paramref name="token"/> may come next.</summary>
    public bool IsAllowed(int token)
    {
        Scan scan = _scan;
        Span<byte> tail = stackalloc byte[_tail.Length];
        _tail.CopyTo(tail);
        return Run(token, ref scan, tail);
    }

    /// <summary>Advances past <paramref name="token"/>.</summary>
    /// <exception cref="InvalidOperationException">The grammar does not allow the token here.</exception>
    public void Accept(int token)
    {
        if (_scan.Active && _matcher.IsEndToken(token))
        {
            _matcher.Accept(token);
            return;
        }
        Scan scan = _scan;
        if (!Run(token, ref scan, _tail))
            throw new InvalidOperationException($"The grammar does not allow token {token} here.");
        _scan = scan;
        _matcher.State = scan.GrammarState;
    }

    /// <summary>
    /// While the grammar applies: masks the tokens it does not allow (tokens that finish it may go on) and returns how many
    /// are left; in free text, changes nothing and returns the number of logits.
    /// </summary>
    public int ApplyMask(Span<float> logits) => _scan.Active ? _matcher.ApplyMask(logits, releaseWhenFinished: true) : logits.Length;

    private bool Run(int token, ref Scan scan, Span<byte> tail)
    {
        if (_matcher.IsEndToken(token))
            return !scan.Active || _engine.CanEnd(scan.GrammarState);
        ReadOnlySpan<byte> bytes = (uint)token < (uint)_engine.Vocabulary.Count ? _engine.Vocabulary.TokenBytes[token] : [];
        if (bytes.IsEmpty)
        {
            // A special token (or an id past the vocabulary): never grammar text; in free text its text may be a trigger.
            if (scan.Active)
                return false;
            bytes = SpecialText(token);
        }
        foreach (byte b in bytes)
        {
            scan.Length++;
            if (!scan.SawText)
            {
                if (b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r')
                    scan.LeadingWhitespace++;
                else
                    scan.SawText = true;
            }
            if (scan.Active)
            {
                if (!GrammarStep(ref scan, b))
                    return false;
                continue;
            }
            if (scan.TailLength == tail.Length)
                tail[1..].CopyTo(tail);
            else
                scan.TailLength++;
            tail[scan.TailLength - 1] = b;
            for (int k = 0; k < _triggers.Length; k++)
            {
                byte[] trigger = _triggers[k];
                if (scan.TailLength < trigger.Length || !tail[(scan.TailLength - trigger.Length)..scan.TailLength].SequenceEqual(trigger))
                    continue;
                long start = scan.Length - trigger.Length;
                if (_definitions[k].AtStart && start > scan.LeadingWhitespace)
                    continue;
                scan.Active = true;
                scan.GrammarState = _engine.InitialState;
                scan.TailLength = 0;
                if (_definitions[k].IsGrammarText)
                {
                    foreach (byte t in trigger)
                    {
                        if (!scan.Active)
                            return false; // the trigger's own text finished the grammar and went on: not a sensible grammar
                        if (!GrammarStep(ref scan, t))
                            return false;
                    }
                }
                break;
            }
        }
        return true;
    }

    /// <summary>One byte of grammar text; when the grammar is finished after it, the text is free again.</summary>
    private bool GrammarStep(ref Scan scan, byte b)
    {
        int next = _engine.Advance(scan.GrammarState, new ReadOnlySpan<byte>(in b));
        if (next == 0)
            return false;
        if (_engine.IsFinished(next))
        {
            scan.Active = false;
            scan.GrammarState = _engine.InitialState;
            scan.TailLength = 0;
        }
        else
        {
            scan.GrammarState = next;
        }
        return true;
    }

    /// <summary>The text of a token without grammar bytes (a special token's, as the tokenizer decodes it), as UTF-8.</summary>
    private byte[] SpecialText(int token)
    {
        if (_specialText.TryGetValue(token, out byte[]? bytes))
            return bytes;
        string text;
        try
        {
            text = _tokenizer.Decode([token]) ?? "";
        }
        catch (ArgumentException)
        {
            text = "";
        }
        bytes = Encoding.UTF8.GetBytes(text);
        _specialText[token] = bytes;
        return bytes;
    }
}
