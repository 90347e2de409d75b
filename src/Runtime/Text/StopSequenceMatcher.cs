using System;
using System.Collections.Generic;

namespace Llama.Compiled;

/// <summary>
/// Cuts streamed text at the first stop sequence. Text that could be the start of a stop sequence is
/// held back until the next chunk shows whether it is one, so nothing emitted ever has to be taken back.
/// </summary>
internal sealed class StopSequenceMatcher
{
    private readonly string[] _stops;
    private string _held = string.Empty;

    public StopSequenceMatcher(IReadOnlyList<string> stopSequences)
    {
        var stops = new List<string>(stopSequences.Count);
        foreach (string stop in stopSequences)
        {
            if (!string.IsNullOrEmpty(stop))
                stops.Add(stop);
        }
        _stops = [.. stops];
    }

    /// <summary>True once a stop sequence was found; nothing more should be pushed.</summary>
    public bool Matched { get; private set; }

    /// <summary>Adds the next chunk; returns the text that can be emitted now (before any stop sequence).</summary>
    public string Push(string chunk)
    {
        if (_stops.Length == 0)
            return chunk;
        string text = _held.Length == 0 ? chunk : _held + chunk;
        // The held text contains no whole stop sequence, so any match starts in the held text or later.
        int first = -1;
        foreach (string stop in _stops)
        {
            int index = text.IndexOf(stop, StringComparison.Ordinal);
            if (index >= 0 && (first < 0 || index < first))
                first = index;
        }
        if (first >= 0)
        {
            Matched = true;
            _held = string.Empty;
            return text[..first];
        }

        // Hold back the longest end of the text that begins some stop sequence.
        int keep = 0;
        foreach (string stop in _stops)
        {
            for (int length = Math.Min(stop.Length - 1, text.Length); length > keep; length--)
            {
                if (text.AsSpan(text.Length - length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    keep = length;
                    break;
                }
            }
        }
        _held = text[(text.Length - keep)..];
        return text[..(text.Length - keep)];
    }

    /// <summary>Returns the held-back text: generation ended without completing a stop sequence.</summary>
    public string Flush()
    {
        string held = _held;
        _held = string.Empty;
        return held;
    }
}
